//! Open-loop pacing: request `i` is DUE at `start + i / rate`, whether or not earlier requests
//! have answered, and its latency is measured from that intended time (no coordinated
//! omission: a stalled target makes the requests that should have been sent meanwhile late,
//! and their lateness is part of their latency).
//!
//! tokio's timer has millisecond granularity, which is coarser than the gaps between requests
//! at 10,000+ per second, so the pacer is a dedicated OS thread: it sleeps with the kernel's
//! high-resolution timer ([`std::thread::sleep`], tens of microseconds of slack), spins for the
//! last [`SPIN_NS`], and on every wake-up releases every request that has become due, each
//! stamped with its own intended time. The runtime that sends them records how late each one
//! actually started ([`crate::stats::Recorder`]'s generator lateness), so an overloaded
//! generator shows up in the report instead of flattering the target.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// The last stretch before a due time that the pacer spins instead of sleeping, ns.
pub const SPIN_NS: u64 = 20_000;

/// A fixed arrival rate, kept as an integer number of requests per 1,000 seconds so that
/// intended send times are exact (no drift from a rounded period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Requests per 1,000 s.
    rate_milli: u64,
}

/// Picoseconds per second times 1,000 (the unit of `rate_milli`): `offset = i * 10^12 / r` ns.
const SCALE: u128 = 1_000_000_000_000;

impl Schedule {
    /// A schedule of `rate` requests per second (rounded to 0.001/s, clamped to
    /// 0.001..=10^9).
    pub fn new(rate: f64) -> Schedule {
        let rate = if rate.is_finite() {
            rate.clamp(0.001, 1e9)
        } else {
            1.0
        };
        Schedule {
            rate_milli: ((rate * 1_000.0).round() as u64).max(1),
        }
    }

    /// Requests per 1,000 seconds.
    pub fn rate_milli(&self) -> u64 {
        self.rate_milli
    }

    /// Intended send time of request `i`, ns after the start: `floor(i / rate)`.
    pub fn offset_ns(&self, i: u64) -> u64 {
        (u128::from(i) * SCALE / u128::from(self.rate_milli)).min(u128::from(u64::MAX)) as u64
    }

    /// How many requests are due `elapsed_ns` after the start (request `i` is due once
    /// `offset_ns(i) <= elapsed_ns`).
    pub fn due(&self, elapsed_ns: u64) -> u64 {
        // floor(i * S / r) <= e  <=>  i * S / r < e + 1  <=>  i < (e + 1) * r / S.
        ((u128::from(elapsed_ns) + 1) * u128::from(self.rate_milli)).div_ceil(SCALE) as u64
    }

    /// Requests intended within a run of `duration`: those with `offset_ns(i) < duration`.
    pub fn count(&self, duration: Duration) -> u64 {
        // floor(i * S / r) < d  <=>  i * S / r < d  <=>  i < d * r / S.
        let ns = duration.as_nanos().min(u128::from(u64::MAX));
        (ns * u128::from(self.rate_milli)).div_ceil(SCALE) as u64
    }
}

/// A request released by the pacer: its index and intended send time.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    /// Request index, 0, 1, 2...
    pub index: u64,
    /// When it should have been sent.
    pub intended: Instant,
}

/// What the pacer thread itself saw.
#[derive(Debug, Clone, Default)]
pub struct PacerStats {
    /// Requests released.
    pub released: u64,
    /// Wake-ups.
    pub wakeups: u64,
    /// Largest gap between a request's intended time and its release, ns.
    pub max_release_lag_ns: u64,
}

/// Sleeps until `deadline` with sub-millisecond precision (sleep, then spin the last
/// [`SPIN_NS`]).
pub fn sleep_until(deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > Duration::from_nanos(SPIN_NS) {
            std::thread::sleep(left - Duration::from_nanos(SPIN_NS));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Starts the pacer thread: it releases requests `0..total` at their intended times into
/// `tx`, and stops early when `stop` is set or the receiver is gone.
pub fn spawn(
    schedule: Schedule,
    total: u64,
    start: Instant,
    tx: mpsc::UnboundedSender<Tick>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<PacerStats>> {
    std::thread::Builder::new()
        .name("stockd-load-pacer".to_owned())
        .spawn(move || {
            let mut stats = PacerStats::default();
            let mut next = 0;
            while next < total && !stop.load(Ordering::Relaxed) {
                sleep_until(start + Duration::from_nanos(schedule.offset_ns(next)));
                stats.wakeups += 1;
                let elapsed = start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
                let due = schedule.due(elapsed).min(total);
                while next < due {
                    let offset = schedule.offset_ns(next);
                    stats.max_release_lag_ns = stats.max_release_lag_ns.max(elapsed - offset);
                    let tick = Tick {
                        index: next,
                        intended: start + Duration::from_nanos(offset),
                    };
                    if tx.send(tick).is_err() {
                        return stats;
                    }
                    next += 1;
                    stats.released += 1;
                }
            }
            stats
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_exact() {
        let s = Schedule::new(1_000.0);
        assert_eq!(s.rate_milli(), 1_000_000);
        assert_eq!(s.offset_ns(0), 0);
        assert_eq!(s.offset_ns(1), 1_000_000);
        assert_eq!(s.offset_ns(2_500), 2_500_000_000);
        let s = Schedule::new(3.0);
        assert_eq!(s.offset_ns(1), 333_333_333);
        assert_eq!(s.offset_ns(2), 666_666_666);
        assert_eq!(s.offset_ns(3), 1_000_000_000);
        let s = Schedule::new(30_000.0);
        assert_eq!(s.offset_ns(1), 33_333);
        assert_eq!(s.offset_ns(30_000), 1_000_000_000);
        assert_eq!(Schedule::new(2.5).offset_ns(5), 2_000_000_000);
    }

    #[test]
    fn due_counts_requests_whose_time_has_come() {
        let s = Schedule::new(1_000.0);
        assert_eq!(s.due(0), 1); // request 0 is due at once
        assert_eq!(s.due(999_999), 1);
        assert_eq!(s.due(1_000_000), 2);
        assert_eq!(s.due(1_000_001), 2);
        assert_eq!(s.due(1_000_000_000), 1_001);
        let s = Schedule::new(3.0);
        assert_eq!(s.due(333_333_332), 1);
        assert_eq!(s.due(333_333_333), 2);
        assert_eq!(s.due(999_999_999), 3);
        assert_eq!(s.due(1_000_000_000), 4);
        // due() agrees with offset_ns() everywhere around the boundaries.
        let s = Schedule::new(7_777.0);
        for i in 1..5_000u64 {
            let t = s.offset_ns(i);
            assert_eq!(s.due(t), i + 1, "at {t}");
            assert!(s.offset_ns(i - 1) < t);
            assert_eq!(s.due(t - 1), i, "just before {t}");
        }
    }

    #[test]
    fn count_is_rate_times_duration() {
        assert_eq!(Schedule::new(1_000.0).count(Duration::from_secs(2)), 2_000);
        assert_eq!(Schedule::new(3.0).count(Duration::from_secs(1)), 3);
        assert_eq!(
            Schedule::new(30_000.0).count(Duration::from_millis(1_500)),
            45_000
        );
        assert_eq!(Schedule::new(2.5).count(Duration::from_secs(2)), 5);
        assert_eq!(Schedule::new(10.0).count(Duration::ZERO), 0);
        assert_eq!(Schedule::new(10.0).count(Duration::from_nanos(1)), 1);
    }

    #[test]
    fn odd_rates_are_clamped() {
        assert_eq!(Schedule::new(f64::NAN).rate_milli(), 1_000);
        assert_eq!(Schedule::new(0.0).rate_milli(), 1);
        assert_eq!(Schedule::new(-5.0).rate_milli(), 1);
        assert_eq!(Schedule::new(1e12).rate_milli(), 1_000_000_000_000);
        assert_eq!(Schedule::new(0.0).offset_ns(1), 1_000_000_000_000);
    }

    #[test]
    fn the_pacer_releases_every_request_on_time() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = Instant::now() + Duration::from_millis(5);
        let stop = Arc::new(AtomicBool::new(false));
        let pacer = spawn(Schedule::new(20_000.0), 2_000, start, tx, stop).expect("thread");
        let stats = pacer.join().expect("pacer");
        assert_eq!(stats.released, 2_000);
        let mut n = 0;
        while let Ok(tick) = rx.try_recv() {
            assert_eq!(tick.index, n);
            assert_eq!(
                tick.intended,
                start + Duration::from_nanos(Schedule::new(20_000.0).offset_ns(n))
            );
            n += 1;
        }
        assert_eq!(n, 2_000);
        assert!(stats.wakeups >= 1 && stats.wakeups <= 2_000, "{stats:?}");
    }
}
